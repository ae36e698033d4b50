import CortadoCore
import CortadoData
import CortadoJob
import CortadoModel
import CortadoPipeline
import CortadoTestSupport
import CortadoTrain
import XCTest

final class JobSpecTests: XCTestCase {
    let base = """
        data: d/manifest.json
        model:
          layers:
            - {type: dense, units: 16}
            - {type: relu}
            - {type: dense, units: 10}
        optimizer: {learning_rate: 0.1, momentum: 0.9}
        batch_size: 32
        epochs: 2
        """

    func testParsesTheShippedJobSpec() throws {
        let s = try JobSpec.load(path: Support.repoRoot + "/jobs/fashion-mlp.yaml")
        XCTAssertEqual(s.layers, [.dense(units: 256), .relu, .dense(units: 128), .relu, .dense(units: 10)])
        XCTAssertEqual(s.batchSize, 64)
        XCTAssertEqual(s.emit, ["fp32", "int8"])
    }

    func testDefaultsAndValues() throws {
        let s = try spec(base)
        XCTAssertEqual(s.optimizer.learningRate, 0.1)
        XCTAssertEqual(s.batchSize, 32)
        XCTAssertEqual(s.seed, 42)
        XCTAssertEqual(s.modelSpec(inputShape: [1, 28, 28]).parameterLayout.count, 784 * 16 + 16 + 16 * 10 + 10)
    }

    func testOverrides() throws {
        let s = try spec(
            base, ["epochs=5", "optimizer.learning_rate=0.2", "model.layers.0.units=64", "checkpoint.every_steps=7"])
        XCTAssertEqual(s.epochs, 5)
        XCTAssertEqual(s.optimizer.learningRate, 0.2)
        XCTAssertEqual(s.layers[0], .dense(units: 64))
        XCTAssertEqual(s.checkpointEvery, 7)
        let t = try spec(base, ["model.layers=[{type: dense, units: 10}]"])
        XCTAssertEqual(t.layers, [.dense(units: 10)])
    }

    /// The canonical JSON is hashed and stored in checkpoints: moving optimizer and layer
    /// knowledge into registries must not change it for specs written before them (every
    /// layer kind and the optimizer keys of that time; pinned from the build before).
    func testCanonicalJSONOfExistingSpecsIsUnchanged() throws {
        let text = """
            data: d/manifest.json
            model:
              layers:
                - {type: conv2d, filters: 2, kernel: 3, padding: 1}
                - {type: max_pool, size: 2}
                - {type: avg_pool, size: 2, stride: 1}
                - {type: flatten}
                - {type: dense, units: 8}
                - {type: layer_norm}
                - {type: relu}
                - {type: gelu}
                - {type: sigmoid}
                - {type: tanh}
                - {type: dropout, rate: 0.25}
                - {type: dense, units: 10}
            optimizer: {type: adamw, learning_rate: 0.01, schedule: cosine, beta2: 0.99}
            """
        XCTAssertEqual(try spec(text).canonicalJSON, Self.pinnedJSON)
        let decoded = try JSONDecoder().decode(JobSpec.self, from: Data(Self.pinnedJSON.utf8))
        XCTAssertEqual(decoded.canonicalJSON, Self.pinnedJSON, "a checkpoint's spec reads back to the same JSON")
    }

    /// `optimizer.type` and `optimizer.schedule` are parsed into the registry and the enum;
    /// a bad value's error lists the allowed ones.
    func testOptimizerTypeAndScheduleErrorsListTheAllowedValues() {
        expectError(base, ["optimizer.type=lamb"], contains: "optimizer.type: 'lamb' is not one of sgd, adam, adamw")
        expectError(
            base, ["optimizer.schedule=exp"],
            contains: "optimizer.schedule: 'exp' is not one of constant, cosine, linear, step")
        expectError(
            base, ["optimizer.type=adam", "optimizer.beta2=1"], contains: "optimizer.beta1/beta2: must be in [0, 1)")
    }

    /// leaky_relu through the one layer parser: its slope (default 0.01), errors naming the
    /// key path, and the model-file JSON round trip.
    func testLeakyReLUSlope() throws {
        let s = try spec(base, ["model.layers.1={type: leaky_relu, slope: 0.2}"])
        XCTAssertEqual(s.layers[1], .activation(Activation(LeakyReLU.self, params: [0.2])))
        XCTAssertEqual(
            try spec(base, ["model.layers.1={type: leaky_relu}"]).layers[1], .activation(Activation(LeakyReLU.self)))
        expectError(
            base, ["model.layers.1={type: leaky_relu, slope: 2}"], contains: "model.layers.1.slope: must be in [0, 1)")
        expectError(base, ["model.layers.1={type: relu, slope: 0.1}"], contains: "model.layers.1.slope: unknown key")
        let json = try JSONEncoder().encode(s.layers)
        XCTAssertEqual(try JSONDecoder().decode([LayerSpec].self, from: json), s.layers)
    }

    static let pinnedJSON =
        #"{"batch_size":64,"checkpoint_every_steps":0,"checkpoint_keep":3,"data":"d/manifest.json","distributed":{"block_rows":512,"bucket_kib":256,"overlap":"off","zero":false},"emit":["fp32","int8"],"epochs":1,"freeze":[],"init_exclude":[],"label_smoothing":0,"layers":[{"filters":2,"kernel":3,"padding":1,"stride":1,"type":"conv2d"},{"size":2,"stride":2,"type":"max_pool"},{"size":2,"stride":1,"type":"avg_pool"},{"type":"flatten"},{"type":"dense","units":8},{"type":"layer_norm"},{"type":"relu"},{"type":"gelu"},{"type":"sigmoid"},{"type":"tanh"},{"rate":0.25,"type":"dropout"},{"type":"dense","units":10}],"loss":"softmax_cross_entropy","non_finite":"stop","optimizer":{"beta1":0.9,"beta2":0.99,"clip_norm":0,"decay_steps":1000,"eps":1e-08,"gamma":0.1,"learning_rate":0.01,"momentum":0.9,"nesterov":false,"schedule":"cosine","type":"adamw","warmup_steps":0,"weight_decay":0},"run_dir":"runs/job","seed":42,"verify_checksums":true,"version":1,"watchdog_seconds":600}"#

    /// `loader:`: defaults (absent: nil, so older specs keep their hash), values, and errors
    /// that name the key.
    func testLoaderSection() throws {
        XCTAssertNil(try spec(base).loader)
        let l = try spec(base, ["loader.chunk_rows=4096"]).loader
        XCTAssertEqual(l?.prefetch, true)
        XCTAssertEqual(l?.chunkRows, 4096)
        XCTAssertEqual(try spec(base, ["loader.prefetch=false"]).loader?.prefetch, false)
        expectError(base, ["loader.prefetch_depth=2"], contains: "loader.prefetch_depth: unknown key")
        expectError(base, ["loader.chunk_rows=-1"], contains: "loader.chunk_rows: must be 0")
        expectError(base, ["loader.prefetch=maybe"], contains: "loader.prefetch")
        expectError(base + "\nteacher: {model: t.cmodel}", ["loader.chunk_rows=256"], contains: "teacher.cache: false")
        XCTAssertNoThrow(try spec(base + "\nteacher: {model: t.cmodel, cache: false}", ["loader.chunk_rows=256"]))
    }

    /// `distributed:`: defaults, values, errors naming the key; a checkpoint's spec written
    /// before `block_rows` existed still decodes (its default), as `cortado compress` needs.
    func testDistributedSection() throws {
        let d = try spec(base).distributed
        XCTAssertEqual(
            [d.overlap.rawValue, String(d.bucketKiB), String(d.blockRows), String(d.zero)],
            ["off", "256", "512", "false"])
        let e = try spec(base, ["distributed.block_rows=64", "distributed.overlap=test"]).distributed
        XCTAssertEqual(e.blockRows, 64)
        XCTAssertEqual(e.overlap, .test)
        expectError(base, ["distributed.block_rows=-1"], contains: "distributed.block_rows: must be 0")
        expectError(base, ["distributed.overlap=async"], contains: "distributed.overlap")
        var json = try JSONSerialization.jsonObject(with: Data(try spec(base).canonicalJSON.utf8)) as! [String: Any]
        json["distributed"] = ["overlap": "thread", "bucket_kib": 64, "zero": true]
        let old = try JSONDecoder().decode(JobSpec.self, from: try JSONSerialization.data(withJSONObject: json))
        XCTAssertEqual(old.distributed.blockRows, 512)
        XCTAssertEqual(old.distributed.bucketKiB, 64)
        XCTAssertEqual(old.distributed.overlap, .thread)
        XCTAssertTrue(old.distributed.zero)
    }

    /// `distributed.exchange`: mpi by default and then absent from the canonical JSON (the
    /// checkpoint hashes of existing runs stay); shm is encoded and read back; the
    /// combinations it does not support are refused naming the key and the other setting.
    func testDistributedExchange() throws {
        let plain = try spec(base)
        XCTAssertEqual(plain.distributed.exchange, .mpi)
        XCTAssertFalse(plain.canonicalJSON.contains("exchange"), plain.canonicalJSON)
        XCTAssertFalse(try spec(base, ["distributed.exchange=mpi"]).canonicalJSON.contains("exchange"))
        let shm = try spec(base, ["distributed.exchange=shm", "distributed.zero=true"])
        XCTAssertEqual(shm.distributed.exchange, .shm)
        XCTAssertTrue(shm.canonicalJSON.contains(#""exchange":"shm""#), shm.canonicalJSON)
        let decoded = try JSONDecoder().decode(JobSpec.self, from: Data(shm.canonicalJSON.utf8))
        XCTAssertEqual(decoded.distributed, shm.distributed)
        expectError(base, ["distributed.exchange=nccl"], contains: "distributed.exchange")
        expectError(
            base, ["distributed.exchange=shm", "distributed.overlap=thread"],
            contains: "distributed.exchange: shm sums the whole arena after backward; set distributed.overlap: off")
        expectError(
            base, ["distributed.exchange=shm", "distributed.precision=bf16"],
            contains: "distributed.exchange: shm sums fp32 in place")
        expectError(
            "data: d/manifest.json\nmodel: {type: recommender}\n", ["distributed.exchange=shm"],
            contains: "distributed.exchange: shm sums the dense exchange of feed-forward models")
    }

    /// `accumulate_steps`: 1 by default and then absent from the canonical JSON (checkpoint
    /// hashes of existing runs stay); other values are encoded and read back; errors name it.
    func testAccumulateSteps() throws {
        XCTAssertEqual(try spec(base).accumulateSteps, 1)
        XCTAssertFalse(try spec(base, ["accumulate_steps=1"]).canonicalJSON.contains("accumulate_steps"))
        let four = try spec(base, ["accumulate_steps=4"])
        XCTAssertEqual(four.accumulateSteps, 4)
        XCTAssertTrue(four.canonicalJSON.contains(#""accumulate_steps":4"#), four.canonicalJSON)
        let decoded = try JSONDecoder().decode(JobSpec.self, from: Data(four.canonicalJSON.utf8))
        XCTAssertEqual(decoded.accumulateSteps, 4)
        expectError(base, ["accumulate_steps=0"], contains: "accumulate_steps: must be in 1...4096, got 0")
        expectError(
            "data: d/manifest.json\nmodel: {type: recommender}\n", ["accumulate_steps=2"],
            contains: "accumulate_steps: is supported for feed-forward models only")
    }

    func testUnknownKeysAndWrongTypesNameTheKey() {
        expectError(base + "\nepoch: 3", contains: "epoch: unknown key")
        expectError(base + "\ncheckpoint: {every: 3}", contains: "checkpoint.every: unknown key")
        expectError(base, ["optimizer.lr=0.1"], contains: "optimizer.lr: unknown key")
        expectError(base, ["batch_size=lots"], contains: "batch_size: expected an integer, got 'lots'")
        expectError(base, ["optimizer.learning_rate=[1]"], contains: "optimizer.learning_rate: expected a number")
    }

    func testValidationNamesTheField() {
        expectError(base, ["batch_size=0"], contains: "batch_size: must be positive")
        expectError(base, ["optimizer.momentum=1.5"], contains: "optimizer.momentum")
        expectError(base, ["model.layers.1.type=conv"], contains: "model.layers.1.type: unknown layer 'conv'")
        expectError(base, ["model.layers.5.units=3"], contains: "--set model.layers.5.units")
        expectError(base, ["emit=[int4]"], contains: "emit.0: recipe 'int4'")
        XCTAssertEqual(try spec(base, ["emit=[fp32, int8-static99.99]"]).emit, ["fp32", "int8-static99.99"])
        expectError(
            "data: d/manifest.json\nmodel: {type: recommender}\n", ["emit=[int8-static]"],
            contains: "emit.0: 'int8-static': static int8")
        expectError(base, ["pruning={sparsity: 1.2}"], contains: "pruning.sparsity: must be in (0, 1)")
        expectError(base, ["pruning={sparsity: 0.5, scope: block}"], contains: "pruning.scope")
        expectError(
            base, ["pruning={sparsity: 0.5, start_step: 100, end_step: 50}"], contains: "pruning.start_step/end_step")
        expectError("model: {layers: []}", contains: "data: required")
    }

    /// The shipped recommender jobs: negatives exclude seen items, early stopping smooths over
    /// 3 epochs; neither key is stored when absent (older specs keep their canonical JSON).
    func testRecommenderExcludeSeenAndSmoothedEarlyStopping() throws {
        let ncf = try JobSpec.load(path: Support.repoRoot + "/jobs/recsys-ncf.yaml")
        XCTAssertEqual(ncf.recommender?.excludeSeen, true)
        XCTAssertEqual(ncf.earlyStopping?.smooth, 3)
        let plain = try spec("data: d/manifest.json\nmodel: {type: recommender, loss: bce}\n")
        XCTAssertNil(plain.recommender?.excludeSeen)
        XCTAssertFalse(plain.canonicalJSON.contains("exclude_seen"))
        let off = try spec("data: d/manifest.json\nmodel: {type: recommender, loss: bce, exclude_seen: false}\n")
        XCTAssertEqual(off.recommender?.excludeSeen, false)
        expectError(base, ["early_stopping={metric: val_loss, smooth: 0}"], contains: "early_stopping.smooth")
        // YAML null takes a shipped setting back to its default: the final fit without
        // validation rows, and NCF without its pretrained start.
        XCTAssertEqual(ncf.initFrom, "runs/recsys-mf-implicit/model-fp32.cmodel")
        let bare = try JobSpec.load(
            path: Support.repoRoot + "/jobs/recsys-ncf.yaml", overrides: ["early_stopping=null", "init_from=~"])
        XCTAssertNil(bare.earlyStopping)
        XCTAssertNil(bare.initFrom)
    }

    /// model.l2 / l2_bias: read into `rowL2`, not stored when absent, negative values refused
    /// naming the key.
    func testRecommenderRowL2() throws {
        let mf = try JobSpec.load(path: Support.repoRoot + "/jobs/recsys-mf.yaml")
        XCTAssertGreaterThan(mf.recommender?.rowL2.embeddings ?? 0, 0)
        let plain = try spec("data: d/manifest.json\nmodel: {type: recommender}\n")
        XCTAssertEqual(plain.recommender?.rowL2, RowL2())
        XCTAssertFalse(plain.canonicalJSON.contains("l2"))
        let both = try spec("data: d/manifest.json\nmodel: {type: recommender, l2: 0.05, l2_bias: 0.001}\n")
        XCTAssertEqual(both.recommender?.rowL2, RowL2(embeddings: 0.05, biases: 0.001))
        XCTAssertTrue(both.canonicalJSON.contains("\"l2_bias\":0.001"), both.canonicalJSON)
        let rec = "data: d/manifest.json\nmodel: {type: recommender}\n"
        expectError(rec, ["model.l2=-0.1"], contains: "model.l2: must be 0 (off) or positive, got -0.1")
        expectError(rec, ["model.l2_bias=-1"], contains: "model.l2_bias: must be 0 (off) or positive")
        expectError(rec, ["model.l2=abc"], contains: "model.l2")
    }

    /// model.time_bias: user_drift with its column and β; absent from the canonical JSON when
    /// off; every inconsistent combination is a one-line error naming its key.
    func testRecommenderTimeBias() throws {
        let mf = try JobSpec.load(path: Support.repoRoot + "/jobs/recsys-mf.yaml")
        XCTAssertEqual(mf.recommender?.architecture.time?.kind, .userDrift)
        let rec = "data: d/manifest.json\nmodel: {type: recommender}\n"
        XCTAssertNil(try spec(rec).recommender?.architecture.time)
        XCTAssertFalse(try spec(rec).canonicalJSON.contains("time"))
        let t = try spec(rec, ["model.time_bias=user_drift", "model.time_column=c3", "model.drift_beta=0.3"])
        XCTAssertEqual(t.recommender?.architecture.time, TimeBias(column: "c3", beta: 0.3))
        let decoded = try JSONDecoder().decode(JobSpec.self, from: Data(t.canonicalJSON.utf8))
        XCTAssertEqual(decoded.recommender?.architecture.time?.beta, 0.3)
        expectError(rec, ["model.time_bias=hourly"], contains: "model.time_bias: ")
        expectError(rec, ["model.time_bias=user_drift"], contains: "model.time_column: time_bias: user_drift needs")
        expectError(rec, ["model.time_column=c3"], contains: "model.time_column: needs time_bias: user_drift")
        expectError(
            rec, ["model.time_bias=user_drift", "model.time_column=c3", "model.drift_beta=1.5"],
            contains: "model.drift_beta: must be in (0, 1], got 1.5")
        expectError(
            rec, ["model.time_bias=user_drift", "model.time_column=c3", "model.bias=false"],
            contains: "model.time_bias: user_drift is a bias term; it needs bias: true")
        expectError(
            rec, ["model.time_bias=user_drift", "model.time_column=c3", "model.loss=bce"],
            contains: "model.time_bias: user_drift is for ratings (loss: mse)")
        expectError(rec, ["model.l2_drift=0.1"], contains: "model.l2_drift: needs time_bias: user_drift")
        expectError(
            rec, ["model.time_bias=user_drift", "model.time_column=c3", "model.l2_drift=-1"],
            contains: "model.l2_drift: must be 0 (off) or positive")
    }

    /// model.user_day_bias: true sets an uncounted per-day bias (the trainer counts the pairs),
    /// survives the canonical JSON, and needs the user drift; l2_user_day needs it.
    func testRecommenderUserDayBias() throws {
        let rec = "data: d/manifest.json\nmodel: {type: recommender}\n"
        let drift = ["model.time_bias=user_drift", "model.time_column=c3"]
        XCTAssertNil(try spec(rec, drift).recommender?.architecture.time?.userDays)
        let t = try spec(rec, drift + ["model.user_day_bias=true", "model.l2_user_day=0.05"])
        XCTAssertEqual(t.recommender?.architecture.time?.userDays, 0)
        XCTAssertEqual(t.recommender?.rowL2.userDay, 0.05)
        let decoded = try JSONDecoder().decode(JobSpec.self, from: Data(t.canonicalJSON.utf8))
        XCTAssertEqual(decoded.recommender?.architecture.time?.userDays, 0)
        XCTAssertEqual(decoded.recommender?.l2UserDay, 0.05)
        XCTAssertNil(try spec(rec, drift + ["model.user_day_bias=false"]).recommender?.architecture.time?.userDays)
        expectError(rec, ["model.user_day_bias=true"], contains: "model.user_day_bias: needs time_bias: user_drift")
        expectError(rec, drift + ["model.l2_user_day=0.1"], contains: "model.l2_user_day: needs user_day_bias: true")
        expectError(
            rec, drift + ["model.user_day_bias=true", "model.l2_user_day=-1"],
            contains: "model.l2_user_day: must be 0 (off) or positive")
    }

    func testModelShapesAreChecked() throws {
        let s = try spec(base)
        XCTAssertThrowsError(try s.modelSpec(inputShape: [784]).validate(classes: 3)) {
            XCTAssertTrue(
                "\($0)".contains(
                    "model.layers.2 (dense(10)): output shape [10] has 10 values but the data has 3 classes"), "\($0)")
        }
    }
}
