"""Network inventory (public schema)."""
