import com.fasterxml.jackson.databind.JsonNode;
import com.fasterxml.jackson.databind.ObjectMapper;
import com.fasterxml.jackson.databind.node.ObjectNode;
import java.nio.charset.StandardCharsets;
import java.time.Duration;
import java.util.Arrays;
import java.util.HashMap;
import java.util.HashSet;
import java.util.Map;
import java.util.Properties;
import java.util.Set;
import org.apache.flink.api.common.JobExecutionResult;
import org.apache.flink.api.common.eventtime.WatermarkStrategy;
import org.apache.flink.api.common.functions.AggregateFunction;
import org.apache.flink.api.common.functions.OpenContext;
import org.apache.flink.api.common.serialization.SimpleStringSchema;
import org.apache.flink.api.common.state.StateTtlConfig;
import org.apache.flink.api.common.state.ValueState;
import org.apache.flink.api.common.state.ValueStateDescriptor;
import org.apache.flink.connector.base.DeliveryGuarantee;
import org.apache.flink.connector.kafka.sink.KafkaRecordSerializationSchema;
import org.apache.flink.connector.kafka.sink.KafkaSink;
import org.apache.flink.connector.kafka.source.KafkaSource;
import org.apache.flink.connector.kafka.source.enumerator.initializer.OffsetsInitializer;
import org.apache.flink.streaming.api.datastream.DataStream;
import org.apache.flink.streaming.api.datastream.KeyedStream;
import org.apache.flink.streaming.api.datastream.SingleOutputStreamOperator;
import org.apache.flink.streaming.api.environment.StreamExecutionEnvironment;
import org.apache.flink.streaming.api.functions.KeyedProcessFunction;
import org.apache.flink.streaming.api.functions.ProcessFunction;
import org.apache.flink.streaming.api.functions.windowing.ProcessWindowFunction;
import org.apache.flink.streaming.api.windowing.assigners.TumblingEventTimeWindows;
import org.apache.flink.streaming.api.windowing.windows.TimeWindow;
import org.apache.flink.util.Collector;
import org.apache.flink.util.OutputTag;
import org.apache.kafka.clients.producer.ProducerRecord;

/**
 * Pulse's aggregation written as an idiomatic Flink DataStream job, for `pulse bench aggregate`.
 *
 * <p>Kafka source (bounded at the end offsets it finds at start) → parse and validate (invalid records to the
 * output as dead letters with a reason) → dedup by event id (keyed state with a TTL) → event time with Pulse's
 * grace (late events to the output) → per shard of users, Pulse's tumbling windows (10 s, 1 min, 1 h, 1 d) with
 * counts per type, status, revenue, purchases, breakdowns by category/status/country/device, item rows, exact
 * distinct users and DDSketch bins of amount and price → per-user state published at most every 30 s of event
 * time → one Kafka sink, exactly-once (transactions committed on checkpoints). Windows publish when they close
 * (Pulse also publishes open windows provisionally every second); no session funnel.
 *
 * <p>Arguments: broker topic group output-topic checkpoint-ms max-future-ms grace-ms windows-ms dimensions dedup-ms (lists
 * comma-separated): Pulse's own settings, so both compute the same windows and breakdowns.
 */
public final class PulseFlinkJob {
  static final int SHARDS = 6;
  static final double GAMMA = 1.01 / 0.99;
  static final OutputTag<String> SIDE = new OutputTag<String>("side") {};
  static final ObjectMapper JSON = new ObjectMapper();

  /** A valid event: what the windows and the user state read. */
  public static final class Event {
    public String id;
    public String type;
    public long ts;
    public String user;
    public String item;
    public String status;
    public double amount;
    public double price;
    public String[] dims;

    public Event() {}
  }

  /** Counts per type, purchases and revenue: a window's, a breakdown value's or an item's. */
  public static final class Row {
    public HashMap<String, Long> counts = new HashMap<>();
    public long purchases;
    public long revenueCents;

    void add(Event e, boolean okPurchase, long cents) {
      counts.merge(e.type, 1L, Long::sum);
      if (okPurchase) {
        purchases++;
        revenueCents += cents;
      }
    }

    void merge(Row o) {
      o.counts.forEach((k, v) -> counts.merge(k, v, Long::sum));
      purchases += o.purchases;
      revenueCents += o.revenueCents;
    }

    ObjectNode json() {
      ObjectNode n = JSON.createObjectNode();
      ObjectNode c = n.putObject("counts");
      counts.forEach(c::put);
      return n.put("purchases", purchases).put("revenue_cents", revenueCents);
    }
  }

  /** One window's partial for one shard of users. */
  public static final class Acc {
    public Row total = new Row();
    public HashMap<String, Long> status = new HashMap<>();
    public HashMap<String, Row> dims = new HashMap<>();
    public HashMap<String, Row> items = new HashMap<>();
    public HashSet<String> users = new HashSet<>();
    public HashMap<Integer, Long> amountBins = new HashMap<>();
    public HashMap<Integer, Long> priceBins = new HashMap<>();
  }

  static int bin(double x) {
    return (int) Math.ceil(Math.log(Math.max(x, 1e-9)) / Math.log(GAMMA));
  }

  static final class Window implements AggregateFunction<Event, Acc, Acc> {
    final String[] dimensions;

    Window(String[] dimensions) {
      this.dimensions = dimensions;
    }

    public Acc createAccumulator() {
      return new Acc();
    }

    public Acc add(Event e, Acc a) {
      boolean ok = "purchase".equals(e.type) && "ok".equals(e.status);
      long cents = Math.round(e.amount * 100);
      a.total.add(e, ok, cents);
      a.status.merge(e.status, 1L, Long::sum);
      for (int d = 0; d < dimensions.length; d++) {
        if (e.dims[d] != null) {
          a.dims.computeIfAbsent(dimensions[d] + "\u0000" + e.dims[d], k -> new Row()).add(e, ok, cents);
        }
      }
      if (e.item != null) {
        a.items.computeIfAbsent(e.item, k -> new Row()).add(e, ok, cents);
      }
      a.users.add(e.user);
      if (ok) {
        a.amountBins.merge(bin(e.amount), 1L, Long::sum);
        if (e.price > 0) {
          a.priceBins.merge(bin(e.price), 1L, Long::sum);
        }
      }
      return a;
    }

    public Acc getResult(Acc a) {
      return a;
    }

    public Acc merge(Acc a, Acc b) {
      a.total.merge(b.total);
      b.status.forEach((k, v) -> a.status.merge(k, v, Long::sum));
      b.dims.forEach((k, v) -> a.dims.computeIfAbsent(k, x -> new Row()).merge(v));
      b.items.forEach((k, v) -> a.items.computeIfAbsent(k, x -> new Row()).merge(v));
      a.users.addAll(b.users);
      b.amountBins.forEach((k, v) -> a.amountBins.merge(k, v, Long::sum));
      b.priceBins.forEach((k, v) -> a.priceBins.merge(k, v, Long::sum));
      return a;
    }
  }

  /** Renders a closed window's partial as its documents: the summary with breakdowns, and its item rows. */
  static final class Publish extends ProcessWindowFunction<Acc, String, Integer, TimeWindow> {
    public void process(Integer shard, Context ctx, Iterable<Acc> accs, Collector<String> out) {
      Acc a = accs.iterator().next();
      TimeWindow w = ctx.window();
      ObjectNode doc = a.total.json().put("kind", "window").put("shard", shard)
          .put("window_ms", w.getEnd() - w.getStart()).put("start", w.getStart()).put("final", true)
          .put("unique_users", a.users.size());
      ObjectNode status = doc.putObject("status");
      a.status.forEach(status::put);
      var rows = doc.putArray("rows");
      a.dims.forEach((k, row) -> {
        String[] dv = k.split("\u0000", 2);
        rows.add(row.json().put("dim", dv[0]).put("value", dv[1]));
      });
      ObjectNode amount = doc.putObject("amount_sketch");
      a.amountBins.forEach((b, n) -> amount.put(Integer.toString(b), n));
      ObjectNode price = doc.putObject("price_sketch");
      a.priceBins.forEach((b, n) -> price.put(Integer.toString(b), n));
      out.collect(doc.toString());
      ObjectNode items = JSON.createObjectNode().put("kind", "window_items").put("shard", shard)
          .put("window_ms", w.getEnd() - w.getStart()).put("start", w.getStart());
      var list = items.putArray("items");
      a.items.forEach((id, row) -> list.add(row.json().put("item_id", id)));
      out.collect(items.toString());
    }
  }

  /** Parses and validates; invalid records go to the side output as dead letters. */
  static final class Parse extends ProcessFunction<String, Event> {
    final long maxFutureMs;
    final String[] dimensions;

    Parse(long maxFutureMs, String[] dimensions) {
      this.maxFutureMs = maxFutureMs;
      this.dimensions = dimensions;
    }

    public void processElement(String raw, Context ctx, Collector<Event> out) {
      String reason = null;
      Event e = new Event();
      try {
        JsonNode n = JSON.readTree(raw);
        if (n == null || !n.isObject()) {
          reason = "not_an_object";
        } else if (!n.path("event_id").isTextual() || !n.path("event_type").isTextual()
            || !n.path("user_id").isTextual() || !n.path("session_id").isTextual()) {
          reason = "missing_field";
        } else if (!n.path("ts").canConvertToLong() || !n.path("ts").isIntegralNumber()) {
          reason = "bad_timestamp";
        } else {
          e.id = n.get("event_id").asText();
          e.type = n.get("event_type").asText();
          e.ts = n.get("ts").asLong();
          e.user = n.get("user_id").asText();
          e.item = n.path("item_id").isTextual() ? n.get("item_id").asText() : null;
          e.status = n.path("status").isTextual() ? n.get("status").asText() : "ok";
          e.amount = n.path("amount").asDouble(0);
          e.price = n.path("price").asDouble(0);
          e.dims = new String[dimensions.length];
          for (int d = 0; d < dimensions.length; d++) {
            JsonNode v = n.path(dimensions[d]);
            e.dims[d] = v.isTextual() ? v.asText() : "status".equals(dimensions[d]) ? e.status : null;
          }
          if (ctx.timestamp() != null && e.ts > ctx.timestamp() + maxFutureMs) {
            reason = "future_timestamp";
          } else if (e.price < 0 || e.amount < 0) {
            reason = "negative_money";
          } else if (("purchase".equals(e.type) || "add_to_cart".equals(e.type)) && e.item == null) {
            reason = "missing_item";
          } else if ("purchase".equals(e.type) && !n.path("amount").isNumber()) {
            reason = "missing_amount";
          }
        }
      } catch (Exception ex) {
        reason = "not_json";
      }
      if (reason == null) {
        out.collect(e);
      } else {
        ctx.output(SIDE, JSON.createObjectNode().put("kind", "dead_letter").put("reason", reason)
            .put("raw", raw).toString());
      }
    }
  }

  /** Drops repeated event ids (the first wins), remembering them for Pulse's duplicate horizon (processing time). */
  static final class Dedup extends KeyedProcessFunction<String, Event, Event> {
    final long horizonMs;
    transient ValueState<Boolean> seen;

    Dedup(long horizonMs) {
      this.horizonMs = horizonMs;
    }

    public void open(OpenContext ctx) {
      ValueStateDescriptor<Boolean> d = new ValueStateDescriptor<>("seen", Boolean.class);
      d.enableTimeToLive(StateTtlConfig.newBuilder(Duration.ofMillis(horizonMs)).build());
      seen = getRuntimeContext().getState(d);
    }

    public void processElement(Event e, Context ctx, Collector<Event> out) throws Exception {
      if (seen.value() == null) {
        seen.update(true);
        out.collect(e);
      }
    }
  }

  /** A user's running totals. */
  public static final class User {
    public Row row = new Row();
    public long first = Long.MAX_VALUE;
    public long last = Long.MIN_VALUE;
    public String lastItem;
    public boolean dirty;
  }

  /** Per-user state, published when it changed, at most once per 30 s of event time. */
  static final class Users extends KeyedProcessFunction<String, Event, String> {
    static final long EVERY_MS = 30_000;
    transient ValueState<User> state;

    public void open(OpenContext ctx) {
      state = getRuntimeContext().getState(new ValueStateDescriptor<>("user", User.class));
    }

    public void processElement(Event e, Context ctx, Collector<String> out) throws Exception {
      User u = state.value();
      if (u == null) {
        u = new User();
      }
      boolean ok = "purchase".equals(e.type) && "ok".equals(e.status);
      u.row.add(e, ok, Math.round(e.amount * 100));
      u.first = Math.min(u.first, e.ts);
      u.last = Math.max(u.last, e.ts);
      if (e.item != null) {
        u.lastItem = e.item;
      }
      if (!u.dirty) {
        u.dirty = true;
        ctx.timerService().registerEventTimeTimer((e.ts / EVERY_MS + 1) * EVERY_MS);
      }
      state.update(u);
    }

    public void onTimer(long at, OnTimerContext ctx, Collector<String> out) throws Exception {
      User u = state.value();
      if (u != null && u.dirty) {
        u.dirty = false;
        state.update(u);
        out.collect(u.row.json().put("kind", "user").put("user_id", ctx.getCurrentKey())
            .put("first_seen", u.first).put("last_seen", u.last).put("last_item", u.lastItem).toString());
      }
    }
  }

  public static void main(String[] args) throws Exception {
    String broker = args[0];
    String topic = args[1];
    String group = args[2];
    String outTopic = args[3];
    long checkpointMs = Long.parseLong(args[4]);
    long maxFutureMs = Long.parseLong(args[5]);
    long graceMs = Long.parseLong(args[6]);
    long[] windowsMs = Arrays.stream(args[7].split(",")).mapToLong(Long::parseLong).toArray();
    String[] dimensions = args[8].split(",");
    long dedupMs = Long.parseLong(args[9]);
    StreamExecutionEnvironment env = StreamExecutionEnvironment.getExecutionEnvironment();
    env.enableCheckpointing(checkpointMs);

    KafkaSource<String> source = KafkaSource.<String>builder().setBootstrapServers(broker).setTopics(topic)
        .setGroupId(group).setStartingOffsets(OffsetsInitializer.earliest())
        .setBounded(OffsetsInitializer.latest()).setValueOnlyDeserializer(new SimpleStringSchema()).build();
    SingleOutputStreamOperator<Event> parsed = env
        .fromSource(source, WatermarkStrategy.noWatermarks(), "input").process(new Parse(maxFutureMs, dimensions));
    DataStream<Event> events = parsed.keyBy(e -> e.id).process(new Dedup(dedupMs))
        .assignTimestampsAndWatermarks(WatermarkStrategy.<Event>forBoundedOutOfOrderness(Duration.ofMillis(graceMs))
            .withTimestampAssigner((e, t) -> e.ts));
    KeyedStream<Event, Integer> byShard = events.keyBy(e -> Math.floorMod(e.user.hashCode(), SHARDS));

    DataStream<String> out = parsed.getSideOutput(SIDE);
    for (long size : windowsMs) {
      SingleOutputStreamOperator<String> windows = byShard
          .window(TumblingEventTimeWindows.of(Duration.ofMillis(size))).sideOutputLateData(lateTag(size))
          .aggregate(new Window(dimensions), new Publish());
      out = out.union(windows, windows.getSideOutput(lateTag(size)).map(
          e -> JSON.createObjectNode().put("kind", "late").put("event_id", e.id).toString()));
    }
    out = out.union(events.keyBy(e -> e.user).process(new Users()));

    Properties producer = new Properties();
    producer.setProperty("transaction.timeout.ms", "600000"); // within the broker's transaction.max.timeout.ms
    out.sinkTo(KafkaSink.<String>builder().setBootstrapServers(broker)
        .setRecordSerializer(new Output(outTopic))
        .setDeliveryGuarantee(DeliveryGuarantee.EXACTLY_ONCE).setTransactionalIdPrefix(group)
        .setKafkaProducerConfig(producer).build());
    JobExecutionResult result = env.execute("pulse-bench-flink");
    System.out.println("flink job finished in " + result.getNetRuntime() + " ms");
  }

  /** Output records without timestamps (the broker stamps them): a day window's end lies in the future. */
  static final class Output implements KafkaRecordSerializationSchema<String> {
    final String topic;

    Output(String topic) {
      this.topic = topic;
    }

    public ProducerRecord<byte[], byte[]> serialize(String doc, KafkaSinkContext ctx, Long timestamp) {
      return new ProducerRecord<>(topic, doc.getBytes(StandardCharsets.UTF_8));
    }
  }

  static OutputTag<Event> lateTag(long size) {
    return new OutputTag<Event>("late-" + size) {};
  }
}
