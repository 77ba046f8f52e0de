"""The gRPC edge: protobuf in, protobuf out. Everything behind it works on plain Python values."""
