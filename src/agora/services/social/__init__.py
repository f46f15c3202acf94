"""The social service: one-time connect tickets and the social real-time socket."""
