import Foundation

/// Where a DEM daemon keeps its state: the explicit directory, else `/var/lib/<name>` for
/// root, else `$XDG_STATE_HOME/<name>` (or `~/.local/state/<name>`).
public enum StateDirectory {
    public static func resolve(_ explicit: String?, name: String) -> String {
        if let explicit { return explicit }
        if getuid() == 0 { return "/var/lib/" + name }
        let environment = ProcessInfo.processInfo.environment
        if let state = environment["XDG_STATE_HOME"], !state.isEmpty { return state + "/" + name }
        return (environment["HOME"] ?? NSTemporaryDirectory()) + "/.local/state/" + name
    }
}
