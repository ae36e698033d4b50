/// The build's version; ranks compare it before step 0 and files record it.
public let cortadoVersion = "0.1.0"
