"""Figures, filmstrips, viewers and run logging built from trajectories and stores."""
