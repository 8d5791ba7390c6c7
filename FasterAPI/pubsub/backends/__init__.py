"""Pub/sub backends: the relays that carry room traffic and presence between workers."""
