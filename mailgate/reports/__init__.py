"""Reading the stored tickets: views, search, export, reports and charts."""
