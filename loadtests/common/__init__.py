"""Helpers shared by the load scenarios: setup through the admin API, credentials that
refresh themselves. Plain ``requests``; no Locust import here."""
