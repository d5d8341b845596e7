"""The helpdesk's own rules, free of sessions and files: lifecycle, commands, tokens, proof, SLA."""
