// A small agent on the official TypeScript SDK: a streaming tool loop (the model asks for a tool,
// the agent runs it and sends the result back, the model answers). It reaches the API through
// ANTHROPIC_BASE_URL and ANTHROPIC_API_KEY, as any agent run under `replayer record` does.
// Prints each message its streams built as one JSON line on stdout (the test compares them with
// what replayer recorded); `node agent.mjs EXIT_CODE` ends with that exit code.
import Anthropic from "@anthropic-ai/sdk";

const client = new Anthropic({ maxRetries: 0 });
const tools = [
  {
    name: "read_file",
    description: "Read a file of the repository.",
    input_schema: { type: "object", properties: { path: { type: "string" } }, required: ["path"] },
  },
];
const messages = [{ role: "user", content: "What does README.md say? Use the tool." }];

for (let turn = 0; turn < 4; turn++) {
  const stream = client.messages.stream({ model: "claude-sonnet-4-5", max_tokens: 256, tools, messages });
  stream.on("text", () => {}); // read as it arrives, as an agent showing its output would
  const message = await stream.finalMessage();
  console.log(JSON.stringify(message));
  if (message.stop_reason !== "tool_use") break;
  messages.push({ role: "assistant", content: message.content });
  messages.push({
    role: "user",
    content: message.content
      .filter((b) => b.type === "tool_use")
      .map((b) => ({ type: "tool_result", tool_use_id: b.id, content: `contents of ${b.input.path}: hello` })),
  });
}
process.exitCode = Number(process.argv[2] ?? 0);
