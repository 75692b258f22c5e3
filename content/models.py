"""Content studio tables arrive with the content-studio issue."""
