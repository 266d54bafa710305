"""The provider's SOC console and onboarding, served at the public domain."""
