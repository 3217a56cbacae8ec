"""What a person reads about a study: the study report and live progress."""
