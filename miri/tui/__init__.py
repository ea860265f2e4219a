"""The Textual dashboard (``miri dashboard``)."""
