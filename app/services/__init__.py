"""Services: call the pure core, then do the I/O through the repositories. Route
handlers stay thin; each service receives its dependencies explicitly."""
