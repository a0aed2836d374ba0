"""Who is asking and how much they may ask: visitor identity and scoping (visitors.py), fair use of the model
(fair_use.py)."""
