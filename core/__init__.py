"""What every app may use; imports no app (ARCHITECTURE.md, Layout)."""
