interface WSMessage {
  type: string;
  data: any;
  id?: string;
  timestamp?: number;
}

class RealtimeProtocolClient {
  private ws: WebSocket | null = null;
  private messageHandlers: Map<string, (data: any) => void> = new Map();
  private pendingAcks: Map<string, (response: any) => void> = new Map();
  private messageCounter = 0;

  constructor(private url: string, private token: string) {
    this.setupDefaultHandlers();
  }

  private setupDefaultHandlers() {
    // Handle connection status
    this.on('Status', (data) => {
      console.log('Status update:', data);
    });

    // Handle errors
    this.on('Error', (data) => {
      console.error('Server error:', data);
    });

    // Handle pings
    this.on('Ping', (data) => {
      this.send('Pong', { timestamp: data.timestamp });
    });
  }

  connect(): Promise<void> {
    return new Promise((resolve, reject) => {
      this.ws = new WebSocket(`${this.url}?token=${this.token}`);

      this.ws.onopen = () => {
        console.log('WebSocket connected');
        resolve();
      };

      this.ws.onmessage = (event) => {
        const message: WSMessage = JSON.parse(event.data);
        this.handleMessage(message);
      };

      this.ws.onerror = (error) => {
        console.error('WebSocket error:', error);
        reject(error);
      };

      this.ws.onclose = () => {
        console.log('WebSocket disconnected');
        this.handleDisconnect();
      };
    });
  }

  private handleMessage(message: WSMessage) {
    // Handle acknowledgments
    if (message.type === 'Ack' && message.data.message_id) {
      const handler = this.pendingAcks.get(message.data.message_id);
      if (handler) {
        handler(message.data);
        this.pendingAcks.delete(message.data.message_id);
        return;
      }
    }

    // Handle regular messages
    const handler = this.messageHandlers.get(message.type);
    if (handler) {
      handler(message.data);
    } else {
      console.warn('Unhandled message type:', message.type);
    }
  }

  on(type: string, handler: (data: any) => void) {
    this.messageHandlers.set(type, handler);
  }

  send(type: string, data: any, expectAck = false): Promise<any> {
    const message: WSMessage = {
      type,
      data,
      id: expectAck ? `msg_${++this.messageCounter}` : undefined,
      timestamp: Date.now()
    };

    if (this.ws?.readyState === WebSocket.OPEN) {
      this.ws.send(JSON.stringify(message));

      if (expectAck && message.id) {
        return new Promise((resolve) => {
          this.pendingAcks.set(message.id, resolve);
          
          // Timeout after 30 seconds
          setTimeout(() => {
            if (this.pendingAcks.has(message.id!)) {
              this.pendingAcks.delete(message.id!);
              resolve({ error: 'Acknowledgment timeout' });
            }
          }, 30000);
        });
      }
    }

    return Promise.resolve();
  }

  subscribe(topics: string[]): Promise<any> {
    return this.send('Subscribe', { topics }, true);
  }

  broadcast(topic: string, payload: any): Promise<any> {
    return this.send('Broadcast', { topic, payload }, true);
  }

  sendDirectMessage(targetUser: string, payload: any): Promise<any> {
    return this.send('DirectMessage', { target_user: targetUser, payload }, true);
  }

  private handleDisconnect() {
    // Clear pending acknowledgments
    this.pendingAcks.clear();
    
    // Implement reconnection logic
    console.log('Implementing reconnection...');
  }

  disconnect() {
    if (this.ws) {
      this.ws.close();
      this.ws = null;
    }
  }
}

// Usage example
async function main() {
  const client = new RealtimeProtocolClient('ws://localhost:8081/ws', 'your-jwt-token');
  
  // Set up message handlers
  client.on('Broadcast', (data) => {
    console.log('Received broadcast:', data);
  });

  client.on('DirectMessage', (data) => {
    console.log('Received DM from', data.from_user, ':', data.payload);
  });

  // Connect and use
  await client.connect();
  
  // Subscribe to topics
  const subResult = await client.subscribe(['chat.general', 'notifications']);
  console.log('Subscription result:', subResult);
  
  // Send a broadcast
  const broadcastResult = await client.broadcast('chat.general', {
    message: 'Hello from TypeScript client!'
  });
  console.log('Broadcast result:', broadcastResult);
}
