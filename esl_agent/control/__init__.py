"""Call control: the outbound event-socket server, our greenswitch session and ESL framing."""
