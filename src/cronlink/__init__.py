"""cronlink."""
