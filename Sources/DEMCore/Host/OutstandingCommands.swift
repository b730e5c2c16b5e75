/// A host queue's outstanding commands by CID, for every transport's host state machine: each
/// command gets a CID no outstanding command has, what the transport needs to finish it is kept
/// under that CID, and the completion's CID gives it back.
struct OutstandingCommands<Command> {
    private var commands: [UInt16: Command] = [:]
    private var nextIdentifier: UInt16 = 0
    /// How many commands may be outstanding at once (a queue's size less one).
    let limit: Int

    init(limit: Int = Int(UInt16.max)) {
        self.limit = min(limit, Int(UInt16.max))
    }

    var count: Int { commands.count }
    var isFull: Bool { commands.count >= limit }

    /// Keeps `command` under a fresh CID and returns it; nil when `limit` commands are outstanding.
    mutating func insert(_ command: Command) -> UInt16? {
        guard !isFull else { return nil }
        var identifier = nextIdentifier
        while commands[identifier] != nil { identifier &+= 1 }
        nextIdentifier = identifier &+ 1
        commands[identifier] = command
        return identifier
    }

    subscript(identifier: UInt16) -> Command? {
        get { commands[identifier] }
        set { commands[identifier] = newValue }
    }

    /// The command under `identifier`, no longer outstanding; nil when none is.
    mutating func remove(_ identifier: UInt16) -> Command? {
        commands.removeValue(forKey: identifier)
    }

    /// Every outstanding command (the queue has failed), in CID order.
    mutating func removeAll() -> [Command] {
        let all = commands.sorted { $0.key < $1.key }.map(\.value)
        commands.removeAll()
        return all
    }
}
