"""The chat service: context building, streaming turns, stop, regenerate, edit,
delete, reset and automatic titles, over the store and the providers."""
