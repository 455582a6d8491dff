"""Results: frozen records that the orchestrators return and every renderer reads; no rendering here."""
