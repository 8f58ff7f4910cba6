"""Dialogs: each a typed ModalScreen that returns its answer through dismiss."""
