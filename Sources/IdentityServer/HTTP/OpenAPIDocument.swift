import Foundation

/// The OpenAPI 3.1 document of the HTTP API, served at `GET /openapi.json` (SPEC.md section 15).
/// It is the hand-written `openapi.json` beside this file, shipped as a resource of this target,
/// so the served bytes are the file's bytes and there is one copy to keep in step with the routes.
public enum OpenAPIDocument {
    /// The document's bytes, read from the resource bundle on first use and kept.
    public static let bytes: [UInt8] = {
        guard let url = Bundle.module.url(forResource: "openapi", withExtension: "json"),
            let data = try? Data(contentsOf: url)
        else {
            // Only a broken installation gets here: the bundle ships beside the executable.
            fatalError(
                "openapi.json is missing from the IdentityServer resource bundle; install the"
                    + " `identity-graph_IdentityServer.resources` folder beside the identity-graph executable"
            )
        }
        return Array(data)
    }()
}
