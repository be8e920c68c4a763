"""Provider adapters: pure translation between the canonical shapes and each provider's wire format."""
