import DEMHTTP
import Foundation
import HTTPTypes
import Hummingbird
import NIOCore

/// The web console: a page, a style sheet and a script written for this project and compiled
/// into dem (no web server, no CDN, nothing fetched at run time), served on the API's port.
/// They are the only routes besides `/health` that need no token: the page signs in with a
/// token the user types, keeps it in the tab's session storage (never in a URL or a cookie, so a
/// page of another site cannot make the browser send it), and calls the REST API with it.
enum ConsoleAssets {
    struct Asset: Sendable {
        var contentType: String
        var body: String
    }

    /// The assets by path.
    static let assets: [String: Asset] = [
        "/": Asset(contentType: "text/html; charset=utf-8", body: page),
        "/console/app.css": Asset(contentType: "text/css; charset=utf-8", body: style),
        "/console/app.js": Asset(contentType: "text/javascript; charset=utf-8", body: script),
    ]

    /// Whether `path` is a console asset (served without a token).
    static func isAsset(_ path: String) -> Bool { assets[path] != nil }

    /// What every asset is sent with: scripts and styles of this origin only, no framing, no
    /// referrer, no sniffing, revalidated on each load.
    static let securityHeaders: HTTPFields = [
        HTTPField.Name("Content-Security-Policy")!:
            "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; connect-src 'self'; base-uri 'none'; form-action 'none'; frame-ancestors 'none'",
        HTTPField.Name("X-Content-Type-Options")!: "nosniff",
        HTTPField.Name("X-Frame-Options")!: "DENY",
        HTTPField.Name("Referrer-Policy")!: "no-referrer",
        .cacheControl: "no-cache",
    ]
}

extension APIRoutes {
    func addConsoleRoutes(_ router: Router<APIRequestContext>) {
        for (path, asset) in ConsoleAssets.assets {
            let encoded = ByteBuffer(string: asset.body)
            router.get(RouterPath(path)) { _, _ in
                var headers = ConsoleAssets.securityHeaders
                headers[.contentType] = asset.contentType
                return Response(status: .ok, headers: headers, body: ResponseBody(byteBuffer: encoded))
            }
        }
        // Who the token is: the console shows it, and a read-only token gets a read-only console.
        router.get("/dem/whoami") { _, context in
            guard let token = context.token else {
                return try APIResponse.object([
                    "Name": context.peer?.description ?? "fabric credential", "Role": "admin",
                ])
            }
            return try APIResponse.object(["ID": token.id, "Name": token.name, "Role": token.role.rawValue])
        }
    }
}
