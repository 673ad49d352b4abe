"""Reasoning tasks rendered as videos, with pixel-only scorers."""
