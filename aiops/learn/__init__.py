"""Learning from experts: retuning series, reweighing evidence, versioned models, incident memory."""
