"""Plain Python values for events and acknowledgements: all that mapping and delivery ever see."""
