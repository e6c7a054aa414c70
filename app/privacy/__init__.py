"""Privacy tiers: which provider may serve which tier, and the in-memory Ephemeral store."""
