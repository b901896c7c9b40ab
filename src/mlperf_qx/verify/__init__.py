"""verify-equivalence: LoadGen runs, accuracy scripts, the extensional and intensional verdicts."""
