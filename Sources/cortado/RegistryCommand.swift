import ArgumentParser
import CortadoCore
import CortadoModel
import CortadoRegistry
import Foundation

/// `cortado registry`: versions, aliases, cards and lineage of trained models in a folder.
struct RegistryCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "registry",
        abstract: "A model registry in a folder: immutable numbered versions, aliases, model cards, lineage.",
        discussion: """
            The registry folder comes from --registry or CORTADO_REGISTRY. Models are then \
            usable as registry://NAME@ALIAS or registry://NAME/VERSION wherever a model path is \
            (init_from, teacher.model, cortado-infer, cortado compress, cortado export onnx). \
            See docs/registry.md.
            """,
        subcommands: [
            RegistryPush.self, RegistryList.self, RegistryShow.self, RegistryAlias.self, RegistryRollback.self,
            RegistryVerify.self, RegistryExport.self
        ])
}

struct RegistryLocation: ParsableArguments {
    @Option(help: "Registry folder (default: $CORTADO_REGISTRY).")
    var registry: String?

    func open() throws -> Registry { Registry(root: try ModelReference.root(flag: registry)) }
}

struct RegistryPush: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "push",
        abstract: "Publish a cortado-train run folder as the next version of NAME.",
        discussion: """
            Copies every model-<recipe>.cmodel, measures each on the data's test split \
            (accuracy or RMSE, batch-1 latency), picks the deployment variant (model.cmodel: \
            the smallest within 0.5 accuracy points of fp32), and writes card.md, lineage.json \
            and metrics.json. Prints the version number.
            """)
    @OptionGroup var location: RegistryLocation
    @Argument(help: "The run folder (run_dir of the job).") var runDir: String
    @Option(help: "Model name (letters, digits, '-', '_', '.').") var name: String
    @Option(help: "Point this alias at the new version (e.g. candidate).") var alias: String?
    @Option(help: "Data manifest to measure on (default: the job spec's data).") var data: String?
    @Option(help: "License for the card's front matter.") var license: String?
    @Option(help: "One paragraph on intended use, for the card.") var intendedUse: String?
    @Option(help: "Reason recorded in the alias history.") var reason: String?

    func run() throws {
        var o = Registry.PushOptions()
        (o.alias, o.data, o.license, o.intendedUse, o.reason) = (alias, data, license, intendedUse, reason)
        let v = try location.open().push(runDir: runDir, name: name, options: o, log: { print($0) })
        print("version \(v)")
    }
}

struct RegistryList: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "list", abstract: "Models, their versions, aliases and deployed variants.")
    @OptionGroup var location: RegistryLocation
    @Argument(help: "Only this model.") var name: String?

    func run() throws {
        let reg = try location.open()
        let names = name.map { [$0] } ?? reg.names()
        if names.isEmpty { print("(no models in \(reg.root))") }
        for n in names {
            let aliases = try reg.aliases(n)
            for v in reg.versions(n) {
                let held = aliases.filter { $0.value == v }.keys.sorted().map { "@" + $0 }.joined(separator: " ")
                let m = try? reg.metrics(n, v)
                let d = m?.variants.first { $0.recipe == m?.deployed }
                let quality =
                    d?.accuracy.map { String(format: "accuracy %.4f", $0) } ?? d?.rmse.map {
                        String(format: "RMSE %.4f", $0)
                    }
                    ?? "not measured"
                print("\(n)/\(v)\t\(m?.deployed ?? "?")\t\(d?.bytes ?? 0) bytes\t\(quality)\t\(held)")
            }
        }
    }
}

struct RegistryShow: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "show", abstract: "A version's card (NAME, NAME@ALIAS or NAME/VERSION), or its lineage chain.")
    @OptionGroup var location: RegistryLocation
    @Argument(help: "NAME (its champion), NAME@ALIAS or NAME/VERSION.") var model: String
    @Flag(help: "Walk the lineage: this version, its parent or teacher, theirs, …") var lineage = false
    @Flag(help: "Print lineage.json (with --lineage: one JSON object per link).") var json = false

    func run() throws {
        let reg = try location.open()
        let (name, v) = try reg.resolve(model.contains("@") || model.contains("/") ? model : model + "@champion")
        if !lineage {
            if json {
                print(
                    String(decoding: try stableJSON(try reg.lineage(name, v), pretty: true), as: UTF8.self))
                return
            }
            let card = (reg.versionDir(name, v) as NSString).appendingPathComponent("card.md")
            guard let text = try? String(contentsOfFile: card, encoding: .utf8) else {
                throw CortadoError.model("\(card): cannot read")
            }
            print(text, terminator: "")
            return
        }
        for (i, link) in try reg.chain(name, v).enumerated() {
            if json, let l = link.lineage {
                print(String(decoding: try stableJSON(l, pretty: false), as: UTF8.self))
                continue
            }
            let indent = String(repeating: "  ", count: i)
            guard let l = link.lineage else {
                print("\(indent)← \(link.label) sha256 \(link.record?.sha256?.prefix(16) ?? "?")…")
                continue
            }
            print(
                "\(indent)\(i == 0 ? "" : "← ")\(link.label): run \(l.runDir), data \(l.data.manifest) (sha256 \(l.data.sha256?.prefix(16) ?? "?")…), "
                    + "\(l.worldSize.map { "\($0) ranks" } ?? "ranks unknown"), \(l.steps.map { "\($0) steps" } ?? "steps unknown"), "
                    + "cortado \(l.cortadoVersion)\(l.gitCommit.map { ", git \($0.prefix(12))" } ?? ""), content \(l.contentSHA256.prefix(16))…"
            )
        }
    }
}

struct RegistryAlias: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "alias", abstract: "Manage aliases (champion, candidate, …).", subcommands: [RegistryAliasSet.self]
    )
}

struct RegistryAliasSet: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "set", abstract: "Point NAME@ALIAS at VERSION (recorded in alias-history.jsonl).")
    @OptionGroup var location: RegistryLocation
    @Argument var name: String
    @Argument var alias: String
    @Argument var version: Int
    @Option(help: "Why (recorded in the history).") var reason: String?

    func run() throws {
        let reg = try location.open()
        let before = try reg.aliases(name)[alias]
        try reg.setAlias(name: name, alias: alias, version: version, reason: reason)
        print("\(name)@\(alias): \(before.map(String.init) ?? "unset") → \(version)")
    }
}

struct RegistryRollback: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "rollback", abstract: "Move NAME@ALIAS back to the version it held before.")
    @OptionGroup var location: RegistryLocation
    @Argument var name: String
    @Argument var alias: String
    @Option(help: "Why (recorded in the history).") var reason: String?

    func run() throws {
        let r = try location.open().rollback(name: name, alias: alias, reason: reason)
        print("\(name)@\(alias): \(r.from) → \(r.to)")
    }
}

struct RegistryVerify: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "verify",
        abstract: "Re-check every file's SHA-256 against lineage.json, load every model, check aliases.")
    @OptionGroup var location: RegistryLocation
    @Argument(help: "Only this model (NAME), alias (NAME@ALIAS) or version (NAME/VERSION).") var model: String?

    func run() throws {
        let r = try location.open().verify(model)
        for p in r.problems { printError("cortado registry verify: \(p)") }
        guard r.problems.isEmpty else {
            throw CortadoError.model("\(r.problems.count) problem(s) in \(r.checked) version(s)")
        }
        print("OK: \(r.checked) version(s)")
    }
}

struct RegistryExport: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "export",
        abstract: "Copy a version (verified) into a model repository folder for cortado-infer serve.",
        aliases: ["pull"])
    @OptionGroup var location: RegistryLocation
    @Argument(help: "NAME@ALIAS or NAME/VERSION.") var model: String
    @Option(name: .out, help: "Model repository folder (OUT/NAME/VERSION/…).") var out: String

    func run() throws {
        let reg = try location.open()
        let dest = try reg.export(model.contains("@") || model.contains("/") ? model : model + "@champion", to: out)
        print("exported to \(dest)")
    }
}
