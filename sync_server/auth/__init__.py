"""Authentication: OIDC access-token validation and local (e-mail/password) accounts."""
