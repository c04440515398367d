/**
 * `npm start`: the local mesh of `deut mesh` with its defaults (eight relayers, three
 * masters, DHT put/get through the tunnels, a closing account of what each party saw).
 */
import { runMesh } from '@deut/cli';

process.exitCode = await runMesh({ relays: 8, masters: 3, processes: false });
