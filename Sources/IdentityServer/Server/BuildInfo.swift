/// What this build is: `identity-graph --version` prints it and `/metrics` reports it as
/// `identity_graph_build_info{version="..."} 1`, from this one constant.
public enum BuildInfo {
    public static let version = "1.0.0"
}
