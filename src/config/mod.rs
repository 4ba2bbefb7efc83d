//! The agent's configuration file (being written).
