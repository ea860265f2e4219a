"""The shop's modules, one per former microservice; none imports server, cli or tui."""
