"""The terminal app (Textual). Only this package imports Textual."""
