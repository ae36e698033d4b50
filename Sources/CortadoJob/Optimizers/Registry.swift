import CortadoCore

/// Every optimizer `optimizer.type` can name. Adding one: its file under Optimizers/, its
/// kernel in CKernels' optimizer.c, and one entry here.
public enum OptimizerRegistry {
    public static let rules: [any OptimizerRule.Type] = [
        SGD.self,
        Adam.self,
        AdamW.self,
        RMSprop.self
    ]

    public static var names: [String] { rules.map { $0.name } }

    public static func rule(named name: String) -> (any OptimizerRule.Type)? { rules.first { $0.name == name } }

    /// Parses `optimizer.type`; an unknown name's error lists the registered ones.
    public static func parse(_ name: String, key: String) throws -> any OptimizerRule.Type {
        guard let r = rule(named: name) else {
            throw CortadoError.usage("\(key): '\(name)' is not one of \(names.joined(separator: ", "))")
        }
        return r
    }
}
