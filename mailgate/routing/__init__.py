"""The rule engine: rule files compiled into a RuleSet, and its evaluation against one mail."""
