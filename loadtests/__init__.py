"""Locust load tests (SPEC §7 "city peak"); see README.md. Nothing here starts a load on
import."""
