import DEMCore

/// dem-em's `/metrics` (Prometheus text): whether it holds, the desired and applied
/// generations, drift, foreign objects, errors and live subsystems, from one status.
enum EndpointMetrics {
    static func render(_ status: EndpointStatus, gates: [ConnectionGate] = []) -> String {
        var text = ""
        func metric(_ name: String, _ help: String, _ value: Int) {
            text += "# HELP \(name) \(help)\n# TYPE \(name) gauge\n\(name) \(value)\n"
        }
        metric(
            "dem_em_holding",
            "1 while dem-em applies nothing because its desired state was lost or damaged (see /status Hold)",
            status.hold == nil ? 0 : 1
        )
        metric("dem_em_desired_generation", "The desired state's generation", status.generation)
        metric(
            "dem_em_applied_generation",
            "The generation last applied in full (-1 for none)",
            status.appliedGeneration ?? -1
        )
        metric("dem_em_drift", "Differences between the kernel target and the desired state", status.drift.count)
        metric("dem_em_foreign", "Desired objects left alone because dem-em did not create them", status.foreign.count)
        metric("dem_em_errors", "Errors of the last apply", status.errors.count)
        metric("dem_em_live_subsystems", "Subsystems the kernel target serves on a port", status.live.count)
        metric("dem_em_owned", "1 once a dem has configured this dem-em (see /owner)", status.owner == nil ? 0 : 1)
        let series: [(String, String, KeyPath<ConnectionGate.Counts, Int>)] = [
            ("dem_em_connections_open", "gauge", \.open),
            ("dem_em_connections_refused_total", "counter", \.refused),
            ("dem_em_connections_timed_out_total", "counter", \.timedOut),
        ]
        for (name, type, field) in series where !gates.isEmpty {
            text += "# HELP \(name) Connections by port (open; refused at a limit; closed for stalling)\n"
            text += "# TYPE \(name) \(type)\n"
            for gate in gates { text += "\(name){port=\"\(gate.name)\"} \(gate.counts[keyPath: field])\n" }
        }
        return text
    }
}
