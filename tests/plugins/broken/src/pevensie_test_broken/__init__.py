"""Deliberately broken plugins: each must be reported, and break nothing else."""
