"""Storage: where blobs live (files or database), and copying an installation between databases."""
