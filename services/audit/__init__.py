"""The append-only, hash-chained audit trail: append (trail), read and export (browse), verify."""
