"""What only tests, benchmarks and demos use: throw-away projects, the narrated monitoring
demo, the traffic simulator, the browser journey, a JWKS stand-in, process helpers.

Not shipped in the bento or the service image."""
