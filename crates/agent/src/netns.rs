//! Network namespaces and veth pairs for the lab (placeholder filled in below).
