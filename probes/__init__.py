"""Linear probes trained on activations read from an interp HDF5 store."""
