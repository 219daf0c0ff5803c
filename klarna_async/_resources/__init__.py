"""One class per Klarna API; one method per endpoint (path, models, retry safety)."""
