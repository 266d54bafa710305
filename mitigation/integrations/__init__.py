"""Adapters that let other detectors hand their findings to Sluice (stand-alone: no Django, stdlib only)."""
