import DEMCore
import Foundation
import Logging
import Testing

@testable import DEMEndpoint

// dem-em's state files and its kernel target: a lost or damaged desired state never becomes
// "remove everything", a dem-em belongs to one target, one dem-em per data directory. The
// nvmet root is a folder standing in for configfs (configfs needs root and the nvmet module).

/// A data directory and an nvmet folder; `remove()` deletes them.
private struct Box {
    let directory: String
    var data: String { directory + "/em" }
    var root: String { directory + "/nvmet" }

    init(makeGroups: Bool = true) throws {
        directory = FileManager.default.temporaryDirectory.appendingPathComponent("em-state-\(UUID().uuidString)").path
        try FileManager.default.createDirectory(atPath: root, withIntermediateDirectories: true)
        if makeGroups {
            for group in ["ports", "subsystems", "hosts"] {
                try FileManager.default.createDirectory(atPath: root + "/" + group, withIntermediateDirectories: true)
            }
        }
    }

    func remove() { try? FileManager.default.removeItem(atPath: directory) }

    func open() throws -> EndpointService {
        var logger = Logger(label: "test.em")
        logger.logLevel = .critical
        return try EndpointService.open(
            dataDirectory: data,
            nvmetRoot: root,
            sysfsRoot: directory + "/sys",
            logger: logger
        )
    }

    /// Every file and folder under the nvmet root, for before/after comparisons.
    func tree() -> [String] {
        (FileManager.default.subpaths(atPath: root) ?? []).sorted()
    }

    var subsystemPath: String { root + "/subsystems/" + NvmetSample.subsystem }
}

@Suite("dem-em's state files: never an empty state to enforce")
struct EndpointStateSafetyTests {
    @Test("desired.json missing while owned.json lists objects: dem-em holds, removes nothing, and says why")
    func missingDesiredStateHolds() async throws {
        let box = try Box()
        defer { box.remove() }
        let first = try box.open()
        let applied = try await first.replace(NvmetSample.desired)
        #expect(applied.errors.isEmpty, "\(applied.errors)")
        #expect(FileManager.default.fileExists(atPath: box.subsystemPath))
        let before = box.tree()
        try FileManager.default.removeItem(atPath: box.data + "/desired.json")

        // What a restart does: open, then apply the desired state.
        let second = try box.open()
        let hold = try #require(second.hold)
        #expect(hold.contains("desired.json is missing"))
        #expect(hold.contains("owned.json"))
        let status = await second.applyDesired()
        #expect(status.hold == hold)
        #expect(box.tree() == before, "nothing was removed from the kernel target")
        // The status and /metrics say so.
        #expect(second.status().hold != nil)
        #expect(EndpointMetrics.render(second.status()).contains("dem_em_holding 1"))

        // dem's push lifts the hold and is applied.
        let pushed = try await second.replace(NvmetSample.desired)
        #expect(pushed.hold == nil)
        #expect(pushed.errors.isEmpty, "\(pushed.errors)")
        #expect(second.hold == nil)
        #expect(FileManager.default.fileExists(atPath: box.data + "/desired.json"))
        #expect(EndpointMetrics.render(second.status()).contains("dem_em_holding 0"))
        #expect(box.tree() == before)
    }

    @Test(
        "desired.json empty or damaged: dem-em starts, holds and names the file; DELETE /config is the explicit way out"
    )
    func damagedDesiredStateHolds() async throws {
        for damage in ["", "{\"Generation\": 3, \"Configuration\": {\"PortIDs\": [", "null"] {
            let box = try Box()
            defer { box.remove() }
            _ = try await box.open().replace(NvmetSample.desired)
            let before = box.tree()
            try Data(damage.utf8).write(to: URL(fileURLWithPath: box.data + "/desired.json"))
            let service = try box.open()
            let hold = try #require(service.hold, "damage \(damage.debugDescription)")
            #expect(hold.contains(box.data + "/desired.json"))
            #expect(hold.contains("cannot be read"))
            _ = await service.applyDesired()
            #expect(box.tree() == before)
            // An operator's explicit reset removes what dem-em created.
            let reset = try await service.reset(all: false)
            #expect(reset.hold == nil)
            #expect(!FileManager.default.fileExists(atPath: box.subsystemPath))
        }
    }

    @Test("a fresh dem-em (no ledger, no desired state) does not hold")
    func freshStartDoesNotHold() throws {
        let box = try Box()
        defer { box.remove() }
        #expect(try box.open().hold == nil)
    }

    @Test("a dem-em belongs to the first target that configures it and refuses another's configuration")
    func ownerRefusesSecondTarget() async throws {
        let box = try Box()
        defer { box.remove() }
        let service = try box.open()
        let dem = "nqn.2014-08.org.nvmexpress:uuid:dddddddd-0000-4000-8000-000000000001"
        let first = try await service.replace(NvmetSample.desired, from: EndpointOwner(target: "target1", dem: dem))
        #expect(first.owner?.target == "target1")
        #expect(FileManager.default.fileExists(atPath: box.subsystemPath))

        // Target "ws" pointed at the same dem-em, with an empty configuration.
        do {
            _ = try await service.replace(EndpointConfiguration(), from: EndpointOwner(target: "ws", dem: dem))
            Issue.record("the second target's configuration was accepted")
        } catch {
            #expect(error.kind == .conflict)
            #expect(error.message.contains("belongs to target \"target1\""))
            #expect(error.message.contains("\"ws\""))
        }
        #expect(FileManager.default.fileExists(atPath: box.subsystemPath), "target1's subsystem is still there")
        // Another dem with the same alias is refused too.
        let other = "nqn.2014-08.org.nvmexpress:uuid:eeeeeeee-0000-4000-8000-000000000002"
        await #expect(throws: ModelError.self) {
            _ = try await service.replace(EndpointConfiguration(), from: EndpointOwner(target: "target1", dem: other))
        }
        // The owner survives a restart.
        let restarted = try box.open()
        #expect(restarted.owner?.target == "target1")
        await #expect(throws: ModelError.self) {
            _ = try await restarted.replace(EndpointConfiguration(), from: EndpointOwner(target: "ws", dem: dem))
        }
        #expect(FileManager.default.fileExists(atPath: box.subsystemPath))
        // Released, the next dem's push owns it.
        #expect(await restarted.releaseOwner()?.target == "target1")
        let taken = try await restarted.replace(NvmetSample.desired, from: EndpointOwner(target: "ws", dem: dem))
        #expect(taken.owner?.target == "ws")
    }

    @Test("--nvmet-root on an empty folder: ports/, subsystems/ and hosts/ are made, and a configuration applies")
    func emptyNvmetFolder() async throws {
        let box = try Box(makeGroups: false)
        defer { box.remove() }
        let status = try await box.open().replace(NvmetSample.desired)
        #expect(status.errors.isEmpty, "\(status.errors)")
        #expect(FileManager.default.fileExists(atPath: box.subsystemPath))
    }

    @Test("a second dem-em on the same data directory is refused with the first one's pid")
    func dataDirectoryLock() throws {
        let box = try Box()
        defer { box.remove() }
        try StateDirectory.prepare(box.data)
        let lock = try StateDirectoryLock.acquire(directory: box.data, owner: "dem-em serve")
        do {
            _ = try StateDirectoryLock.acquire(directory: box.data, owner: "dem-em import")
            Issue.record("the second lock was granted")
        } catch {
            #expect(error.description.contains("in use by dem-em serve (pid \(getpid()))"))
            #expect(error.description.contains(box.data))
        }
        lock.release()
        let again = try StateDirectoryLock.acquire(directory: box.data, owner: "dem-em import")
        again.release()
    }
}
