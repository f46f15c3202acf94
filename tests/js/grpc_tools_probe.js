// A gRPC tool's view of an Agora gRPC server, as @grpc/grpc-js users get it: list the
// services through server reflection (grpc-js-reflection-client), load the health
// service's descriptor from the server itself (no .proto file here), then call
// grpc.health.v1.Health/Check for the server ("") and for each listed service.
// Usage: node grpc_tools_probe.js <host:port> [more service names to Check]. Prints one
// JSON object on stdout.
"use strict";

const grpc = require("@grpc/grpc-js");
const { GrpcReflection } = require("grpc-js-reflection-client");

const target = process.argv[2];
const credentials = grpc.credentials.createInsecure();
const STATUS = ["UNKNOWN", "SERVING", "NOT_SERVING", "SERVICE_UNKNOWN"];

function check(Health, service) {
  const client = new Health(target, credentials);
  return new Promise((resolve) => {
    client.Check({ service }, { deadline: Date.now() + 10000 }, (error, answer) => {
      client.close();
      if (error) resolve({ code: error.code, details: error.details });
      else resolve({ status: typeof answer.status === "number" ? STATUS[answer.status] : answer.status });
    });
  });
}

async function main() {
  const reflection = new GrpcReflection(target, credentials, {}, "v1alpha");
  const services = await reflection.listServices();
  const methods = {};
  for (const service of services) {
    methods[service] = (await reflection.listMethods(service)).map((m) => m.name);
  }
  const descriptor = await reflection.getDescriptorBySymbol("grpc.health.v1.Health");
  const Health = descriptor.getPackageObject({ keepCase: true, enums: String }).grpc.health.v1.Health;
  const health = {};
  for (const service of ["", ...services, ...process.argv.slice(3)]) {
    health[service] = await check(Health, service);
  }
  process.stdout.write(JSON.stringify({ services, methods, health }));
}

main().catch((error) => {
  process.stderr.write(String(error && error.stack ? error.stack : error));
  process.exit(1);
});
