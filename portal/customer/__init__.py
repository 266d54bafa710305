"""The customer self-service portal, served at a tenant's own domain."""
